from financial_assets.analytics.assets import star_schema

ANALYTICS_ASSETS = [star_schema]

__all__ = ["ANALYTICS_ASSETS"]
