"""E-mail: templates, rendering, and the mailers that send (SMTP) or file (.eml) them."""
