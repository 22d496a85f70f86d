"""Sign-in traces (``core.sign_in_traces``)."""

from __future__ import annotations

from dataclasses import asdict

from sqlalchemy import select
from sqlalchemy.orm import Session

from keyhall.core.ports import Page
from keyhall.core.sign_in_traces import MappedAttribute, SignInTrace, StepOutcome, TraceKind, TraceStep
from keyhall.storage.models import SignInTraceRow
from keyhall.storage.repos._query import paginate


class SqlSignInTraces:
    def __init__(self, session: Session):
        self.session = session

    @staticmethod
    def _entity(row: SignInTraceRow) -> SignInTrace:
        return SignInTrace(
            id=row.id, organization_id=row.organization_id, connection_id=row.connection_id, protocol=row.protocol,
            kind=TraceKind(row.kind), outcome=StepOutcome(row.outcome),
            steps=[TraceStep(name=s["name"], outcome=StepOutcome(s["outcome"]), detail=s["detail"]) for s in row.steps],
            attributes=[MappedAttribute(name=a["name"], values=list(a["values"]), mapped_to=list(a["mapped_to"]))
                        for a in row.attributes],
            profile=dict(row.profile), failure=dict(row.failure) if row.failure else None, started_by=row.started_by,
            user_id=row.user_id, created_at=row.created_at, browser_binding=row.browser_binding,
        )

    def add(self, trace: SignInTrace) -> None:
        self.session.add(SignInTraceRow(
            id=trace.id, organization_id=trace.organization_id, connection_id=trace.connection_id,
            protocol=trace.protocol, kind=trace.kind.value, outcome=trace.outcome.value,
            steps=[{**asdict(s), "outcome": s.outcome.value} for s in trace.steps],
            attributes=[asdict(a) for a in trace.attributes], profile=trace.profile, failure=trace.failure,
            started_by=trace.started_by, user_id=trace.user_id, browser_binding=trace.browser_binding,
            created_at=trace.created_at,
        ))

    def get(self, organization_id: str, trace_id: str) -> SignInTrace | None:
        row = self.session.get(SignInTraceRow, trace_id[:36])
        return self._entity(row) if row is not None and row.organization_id == organization_id else None

    def get_any(self, trace_id: str) -> SignInTrace | None:
        row = self.session.get(SignInTraceRow, trace_id[:36])
        return self._entity(row) if row is not None else None

    def list_page(self, organization_id: str, *, limit: int, cursor: str | None, connection_id: str | None = None,
                  outcome: str | None = None) -> Page[SignInTrace]:
        query = select(SignInTraceRow).where(SignInTraceRow.organization_id == organization_id)
        if connection_id:
            query = query.where(SignInTraceRow.connection_id == connection_id)
        if outcome:
            query = query.where(SignInTraceRow.outcome == outcome)
        return paginate(self.session, query, SignInTraceRow.created_at, SignInTraceRow.id, limit=limit,
                        cursor=cursor, convert=self._entity)
