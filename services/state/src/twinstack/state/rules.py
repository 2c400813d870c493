"""Alert rules: validated on the way in, stored in the ``alert_rules`` KV bucket, and followed
by every replica with a KV watch so that evaluation always uses the current set."""

from __future__ import annotations

import re
from collections.abc import Callable

from nats.js.errors import KeyNotFoundError
from nats.js.kv import KeyValue

from twinstack.api.state.v1 import state_pb2
from twinstack.common.catalog import ModelCatalog
from twinstack.common.errors import (
    FieldViolation,
    InvalidArgumentError,
    LimitExceededError,
    NotFoundError,
)
from twinstack.common.ids import (
    TENANT_QUALIFIER,
    field_name_violation,
    model_id_violation,
    twin_id_violation,
)
from twinstack.common.quotas import QuotaOverrides, no_overrides, quota_of, require_quota
from twinstack.common.tenancy import tenant_of
from twinstack.common.times import duration_violation
from twinstack.modeling.document import ModelError
from twinstack.modeling.resolve import ResolvedModel
from twinstack.state.follower import BucketFollower

RULE_ID = re.compile(TENANT_QUALIFIER + r"[a-z0-9][a-z0-9-]{0,63}")
RULE_RESOURCE = "twinstack.io/AlertRule"


def rule_violations(
    rule: state_pb2.AlertRule, resolve: Callable[[str], ResolvedModel]
) -> list[FieldViolation]:
    """Everything wrong with a rule; ``resolve`` (a model id to the model, ModelError if it is
    unknown) says whether its model and field exist."""
    violations = []
    if not RULE_ID.fullmatch(rule.id):
        violations.append(
            FieldViolation(
                "rule.id", "1-64 characters of [a-z0-9-] starting with a letter or digit"
            )
        )
    scope = rule.WhichOneof("scope")
    telemetry = None
    if scope is None:
        violations.append(FieldViolation("rule.scope", "set model_id or twin_id"))
    elif scope == "twin_id":
        bad = twin_id_violation(rule.twin_id, "rule.twin_id")
        violations += [bad] if bad else []
    else:
        bad = model_id_violation(rule.model_id, "rule.model_id")
        if bad:
            violations.append(bad)
        else:
            try:
                telemetry = resolve(rule.model_id).telemetry
            except ModelError:
                violations.append(
                    FieldViolation("rule.model_id", f"unknown model {rule.model_id!r}")
                )
    condition = rule.WhichOneof("condition")
    if condition is None:
        violations.append(
            FieldViolation("rule.condition", "set threshold, rate, staleness or anomaly")
        )
    elif condition != "staleness":
        bad = field_name_violation(rule.field, "rule.field")
        if bad:
            violations.append(bad)
        elif telemetry is not None:
            spec = telemetry.get(rule.field)
            if spec is None:
                violations.append(
                    FieldViolation("rule.field", f"the model declares no telemetry {rule.field!r}")
                )
            elif spec.schema.kind not in ("double", "integer"):
                violations.append(FieldViolation("rule.field", "rules watch numeric telemetry"))
    violations += _condition_violations(rule, condition)
    if rule.severity == 0:
        violations.append(FieldViolation("rule.severity", "set a severity"))
    return violations


def _condition_violations(rule: state_pb2.AlertRule, condition: str | None) -> list[FieldViolation]:
    violations = []
    if condition == "threshold":
        threshold = rule.threshold
        above = threshold.direction == state_pb2.ThresholdCondition.DIRECTION_ABOVE
        below = threshold.direction == state_pb2.ThresholdCondition.DIRECTION_BELOW
        if not (above or below):
            violations.append(FieldViolation("rule.threshold.direction", "ABOVE or BELOW"))
        elif (above and threshold.clear_at > threshold.raise_at) or (
            below and threshold.clear_at < threshold.raise_at
        ):
            violations.append(
                FieldViolation(
                    "rule.threshold.clear_at",
                    "must be on the near side of raise_at, or the alert could never clear",
                )
            )
    elif condition == "rate":
        if not rule.rate.max_per_s > 0:
            violations.append(FieldViolation("rule.rate.max_per_s", "must be positive"))
    elif condition == "staleness":
        silence = rule.staleness.max_silence
        invalid = duration_violation(silence, "rule.staleness.max_silence")
        if invalid is not None:
            violations.append(invalid)
        elif silence.ToNanoseconds() <= 0:
            violations.append(FieldViolation("rule.staleness.max_silence", "must be positive"))
    elif condition == "anomaly":
        anomaly = rule.anomaly
        if not 0 < anomaly.alpha < 1:
            violations.append(FieldViolation("rule.anomaly.alpha", "must be between 0 and 1"))
        if not anomaly.raise_score > 0:
            violations.append(FieldViolation("rule.anomaly.raise_score", "must be positive"))
        if not 0 <= anomaly.clear_score <= anomaly.raise_score:
            violations.append(
                FieldViolation("rule.anomaly.clear_score", "must be between 0 and raise_score")
            )
    return violations


class RuleBook(BucketFollower):
    """The current alert rules, followed from the bucket, looked up by twin and model."""

    def __init__(
        self,
        bucket: KeyValue,
        catalog: ModelCatalog,
        *,
        max_rules: int,
        tenant_max_rules: int,
        quotas: QuotaOverrides = no_overrides,
    ) -> None:
        super().__init__(bucket)
        self._catalog = catalog
        self._max_rules = max_rules
        self._tenant_max_rules = tenant_max_rules
        self._quotas = quotas
        self._rules: dict[str, state_pb2.AlertRule] = {}
        self._by_model: dict[str, list[state_pb2.AlertRule]] = {}
        # Each telemetry message looks its twin's rules up here, not by scanning every rule.
        self._by_twin: dict[str, list[state_pb2.AlertRule]] = {}

    def apply(self, key: str, value: bytes | None, revision: int) -> None:
        previous = self._rules.pop(key, None)
        if previous is not None and previous.WhichOneof("scope") == "twin_id":
            own = self._by_twin[previous.twin_id]
            own.remove(previous)
            if not own:
                del self._by_twin[previous.twin_id]
        if value is not None:
            rule = state_pb2.AlertRule.FromString(value)
            rule.revision = revision
            self._rules[key] = rule
            if rule.WhichOneof("scope") == "twin_id":
                self._by_twin.setdefault(rule.twin_id, []).append(rule)
        self._by_model.clear()

    def get(self, rule_id: str) -> state_pb2.AlertRule | None:
        return self._rules.get(rule_id)

    def page(self, after: str, size: int, tenant: str) -> tuple[list[state_pb2.AlertRule], bool]:
        """Up to ``size`` rules of ``tenant`` with ids after ``after``, and whether more
        follow."""
        ids = sorted(
            rule_id for rule_id in self._rules if rule_id > after and tenant_of(rule_id) == tenant
        )
        return [self._rules[rule_id] for rule_id in ids[:size]], len(ids) > size

    def rules_for(self, twin_id: str, model_id: str) -> list[state_pb2.AlertRule]:
        """Rules of the twin itself and of its model or any model it extends."""
        of_model = self._by_model.get(model_id)
        if of_model is None:
            of_model = [
                rule
                for rule in self._rules.values()
                if rule.WhichOneof("scope") == "model_id"
                and model_id
                and self._catalog.is_a(model_id, rule.model_id)
            ]
            self._by_model[model_id] = of_model
        return of_model + self._by_twin.get(twin_id, [])

    async def put(self, rule: state_pb2.AlertRule) -> state_pb2.AlertRule:
        violations = rule_violations(rule, self._catalog.resolve)
        if violations:
            raise InvalidArgumentError("invalid alert rule", violations)
        if rule.id not in self._rules and len(self._rules) >= self._max_rules:
            # Every telemetry message is checked against the rules of its twin and model.
            raise LimitExceededError(
                f"{len(self._rules)} alert rules exist; at most {self._max_rules}",
                limit="TWINSTACK_MAX_ALERT_RULES",
                maximum=self._max_rules,
                held_by_caller=True,
            )
        tenant = tenant_of(rule.id)
        if rule.id not in self._rules:
            require_quota(
                tenant,
                held=sum(1 for rule_id in self._rules if tenant_of(rule_id) == tenant),
                adding=1,
                maximum=quota_of(self._quotas, tenant, "max_alert_rules", self._tenant_max_rules),
                quota="TWINSTACK_TENANT_MAX_ALERT_RULES",
                what="alert rules",
            )
        stored = state_pb2.AlertRule()
        stored.CopyFrom(rule)
        stored.ClearField("revision")
        stored.revision = await self._bucket.put(rule.id, stored.SerializeToString())
        return stored

    async def delete(self, rule_id: str) -> None:
        if not RULE_ID.fullmatch(rule_id):
            raise InvalidArgumentError(
                "invalid rule id", [FieldViolation("rule_id", "not a rule id")]
            )
        try:
            await self._bucket.get(rule_id)
        except KeyNotFoundError as error:
            raise NotFoundError(RULE_RESOURCE, rule_id, f"no alert rule {rule_id!r}") from error
        await self._bucket.delete(rule_id)
