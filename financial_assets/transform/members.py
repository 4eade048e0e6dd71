"""The unknown member: the key every dimension and history keeps for "not known", so that no fact
is dropped for want of a member (see `financial_assets.transform.star_schema`)."""

UNKNOWN_KEY = -1
