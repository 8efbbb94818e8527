"""`python -m services.registry` serves; `python -m services.registry import-volunteers FILE` imports;
`create-admin` opens a city admin account and `token-keys` makes the token-signing key pair."""

import sys

if sys.argv[1:2] == ["import-volunteers"]:
    from services.registry.cli import main

    sys.exit(main(sys.argv[2:]))
elif sys.argv[1:2] in (["create-admin"], ["token-keys"]):
    from services.registry import cli

    sys.exit({"create-admin": cli.create_admin, "token-keys": cli.token_keys}[sys.argv[1]](sys.argv[2:]))
else:
    from services.registry.app import create_app
    from shared.serve import serve

    serve("registry", create_app)
