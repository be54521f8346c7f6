"""Accounts: registration, profiles, roles, and the staff and admin views of them."""
