"""`python -m order_api …` is `order-api …`: the stack starts its processes this way."""

from order_api.cli import main

main()
