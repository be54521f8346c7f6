"""The catalogue: products, their prices and stock, and the top sellers."""
