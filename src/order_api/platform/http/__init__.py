"""The HTTP door: the one middleware (request id, limits, headers, body size, access line), CORS
and security headers, the JSON body rule, OpenAPI links, and the server's options. Other packages
import these names from here only."""

from order_api.platform.http.bodies import UniqueKeysRoute
from order_api.platform.http.diagnostics import router as diagnostics_router
from order_api.platform.http.docs import OPENAPI_URL, install_api_docs
from order_api.platform.http.headers import BOARD_CSP, CorsPolicy, SecurityHeaders
from order_api.platform.http.links import add_links
from order_api.platform.http.middleware import EdgeMiddleware, EdgeRules, FixedAnswer
from order_api.platform.http.server import uvicorn_options

__all__ = [
    "BOARD_CSP",
    "OPENAPI_URL",
    "CorsPolicy",
    "EdgeMiddleware",
    "EdgeRules",
    "FixedAnswer",
    "SecurityHeaders",
    "UniqueKeysRoute",
    "add_links",
    "diagnostics_router",
    "install_api_docs",
    "uvicorn_options",
]
