"""Accounts: registration, profiles, roles, and the staff and admin views of them.

The door: `service`, `models` and `schemas`. The router is the app's; the repository is this
package's own. (Names are imported from those modules, not re-exported here: auth imports
`users.models`, and users' service imports auth's, so a package that loaded its service on
import would load the two halfway through each other.)
"""
