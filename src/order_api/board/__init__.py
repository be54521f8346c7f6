"""The staff order board: one static page that lists orders and follows the live order stream.

The door: `router`."""
