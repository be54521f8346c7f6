"""Login, access and refresh tokens, logout, and the dependencies that guard endpoints."""
