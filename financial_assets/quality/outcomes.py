"""What a check is (:class:`CheckSpec`) and what it found (:class:`CheckOutcome`): shared by the
star schema's checks and the history's, run by both engines. No Dagster import."""

from __future__ import annotations

from dataclasses import dataclass, field

from financial_assets.quality.defects import DefectCheck

ERROR, WARN = "ERROR", "WARN"


@dataclass(frozen=True)
class CheckSpec:
    asset: str
    name: str
    severity: str  # the most severe result it can give: ERROR blocks
    description: str
    defect: DefectCheck | None = None

    @property
    def blocking(self) -> bool:
        return self.severity == ERROR


@dataclass
class CheckOutcome:
    asset: str
    name: str
    passed: bool
    severity: str
    metadata: dict = field(default_factory=dict)

    def pipes_metadata(self) -> dict:
        """The metadata as Dagster Pipes carries it: nested values typed as JSON."""
        return {
            key: {"raw_value": value, "type": "json"} if isinstance(value, dict | list) else value
            for key, value in self.metadata.items()
        }


def outcome_of(specs: list[CheckSpec], asset: str, name: str, passed: bool, **metadata) -> CheckOutcome:
    """The outcome of the check ``asset``.``name`` of ``specs``, at that check's severity."""
    spec = next(s for s in specs if s.asset == asset and s.name == name)
    return CheckOutcome(asset, name, bool(passed), spec.severity, metadata)
