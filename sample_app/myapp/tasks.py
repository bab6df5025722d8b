"""The sample project's tasks. All are idempotent: with acks_late any of them may run twice."""
import logging
import time

from celery import shared_task

from myapp import ledger

logger = logging.getLogger(__name__)


@shared_task(bind=True)
def healthcheck_task(self) -> str:
    logger.info("Celery test task executed")
    ledger.record("healthcheck", self.request.id, worker=self.request.hostname)
    return "ok"


@shared_task(bind=True)
def generate_report(self, report_id: str, seconds: float = 0.0) -> str:
    """A long job; routed to the `long` queue (CELERY_TASK_ROUTES) so it never delays short tasks."""
    ledger.record("report-started", report_id, worker=self.request.hostname)
    time.sleep(seconds)
    ledger.record("report", report_id, worker=self.request.hostname)
    return report_id


@shared_task(bind=True)
def record_execution(self, key: str, seconds: float = 0.0) -> str:
    """A unit of work identified by `key`: the ledger shows each start and each completion, so a
    redelivered task (worker killed mid-run) shows as two starts and one completion."""
    ledger.record("started", key, worker=self.request.hostname, task_id=self.request.id)
    time.sleep(seconds)
    ledger.record("executed", key, worker=self.request.hostname, task_id=self.request.id)
    return key


@shared_task(bind=True)
def beat_heartbeat(self) -> None:
    """Scheduled by Beat (CELERY_BEAT_SCHEDULE): one ledger entry per tick proves exactly one
    Beat is running."""
    ledger.record("beat", self.request.id, worker=self.request.hostname)
