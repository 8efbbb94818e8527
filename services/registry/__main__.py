"""`python -m services.registry` serves; `python -m services.registry import-volunteers FILE` imports."""

import sys

if sys.argv[1:2] == ["import-volunteers"]:
    from services.registry.cli import main

    sys.exit(main(sys.argv[2:]))
else:
    from services.registry.app import create_app
    from shared.serve import serve

    serve("registry", create_app)
