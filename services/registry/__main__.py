from services.registry.app import create_app
from shared.serve import serve

serve("registry", create_app)
