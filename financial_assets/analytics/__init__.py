from financial_assets.analytics.assets import star_schema
from financial_assets.analytics.publication import published_star_schema

ANALYTICS_ASSETS = [star_schema, published_star_schema]

__all__ = ["ANALYTICS_ASSETS"]
