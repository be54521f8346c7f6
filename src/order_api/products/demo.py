"""A small demo catalogue, so a fresh embedded shop has something to browse and order."""

from __future__ import annotations

from sqlalchemy.ext.asyncio import AsyncSession

from order_api.platform.adapters import Cache
from order_api.products import repository
from order_api.products.schemas import ProductCreate
from order_api.products.service import create_product

DEMO_PRODUCTS = (
    ProductCreate(name="Espresso beans, 1 kg", price_cents=2490, stock=40),
    ProductCreate(name="Filter coffee, 500 g", price_cents=1190, stock=60),
    ProductCreate(name="Green tea, 100 g", price_cents=790, stock=80),
    ProductCreate(name="Ceramic mug", description="Holds 350 ml.", price_cents=1450, stock=25),
    ProductCreate(name="Pour-over dripper", price_cents=2290, stock=15),
    ProductCreate(name="Paper filters, 100 pieces", price_cents=490, stock=120),
    ProductCreate(name="Hand grinder", description="Ceramic burrs.", price_cents=5900, stock=8),
    ProductCreate(name="Milk frother", price_cents=3490, stock=0),  # shows "out of stock"
)


async def seed_demo_catalogue(session: AsyncSession, cache: Cache) -> int:
    """Create the demo products on an empty catalogue; return how many were created."""
    if await repository.any_product(session):
        return 0
    for product in DEMO_PRODUCTS:
        await create_product(session, cache, product)
    return len(DEMO_PRODUCTS)
