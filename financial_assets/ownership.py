"""Who owns each asset and how the catalog classifies it: the owners and tags the UI shows and
filters by (`tag:layer=raw`, `tag:pii=true`)."""

from __future__ import annotations

# The team that builds and runs this platform: the owner of every asset it defines, and the one
# to ask about the sources it observes.
OWNERS = ["team:data-platform"]

SOURCE, RAW, ANALYTICS, MAINTENANCE = "source", "raw", "analytics", "maintenance"


def asset_tags(layer: str, domain: str, pii: bool) -> dict[str, str]:
    """``layer``: where the asset sits (source, raw, analytics, maintenance); ``domain``: the
    business subject (customers, accounts, transactions, calendar, lakehouse); ``pii``: whether
    a reader of the asset can see personal data in clear (tag values are strings)."""
    return {"layer": layer, "domain": domain, "pii": "true" if pii else "false"}
