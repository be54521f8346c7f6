"""Login, access and refresh tokens, logout, and who is calling.

The door: `dependencies` (`CurrentUser`, `StaffUser`, `AdminUser`, `OptionalUser`), `service`
(`Caller`, `lock_user`, `end_all_sessions`, `revocation_cutoffs`, `caller_for_claims`) and
`models`. The router is the app's; the repository is this package's own.
"""
