from services.points.app import create_app
from shared.serve import serve

serve("points", create_app)
