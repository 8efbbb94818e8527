from services.dispatch.app import create_app
from shared.serve import serve

serve("dispatch", create_app)
