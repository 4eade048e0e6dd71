from financial_assets.source_assets.assets import SOURCE_ASSETS, SOURCE_KEYS

__all__ = ["SOURCE_ASSETS", "SOURCE_KEYS"]
