"""The training-loop orchestrator: retrain policies, the job state machine and each stage's work.

One module per seam (docs/ARCHITECTURE.md draws the loop):

- ``state``: the state machine's guarded transitions, the stage lease, deadlines, ending a job early;
- ``start``: retrain policies and starting a job; ``permissions``: who may start, cancel and approve;
- ``stages``: preparing the data, training, evaluating, A/B testing, and ``job_advance`` over them;
- ``comparison``: a comparison's candidates (trained on one dataset, ranked, the best kept, the online
  test's arms and its winner);
- ``decide``: the decision rule after evaluation or an A/B test, a pure function of the evidence;
- ``deploy``: carrying a decision out (deploy now or by a progressive rollout, reject, wait);
- ``review``: people's decisions (approve, reject, cancel);
- ``watchdog``: overdue and orphaned jobs, and the A/B app's "experiment ended" signal.

The names callers use are re-exported here (``from training import services; services.job_approve(...)``).
The job's timeline writer is ``training.events.job_record_event`` (below the services, because trainers
write to it too) and the errors are in ``training.exceptions``; both are re-exported as well.
"""

from training.events import job_record_event
from training.exceptions import ConfirmationRequired, IllegalTransition, JobActive
from training.services.decide import CAUSE_AUTO_DEPLOY, CAUSE_FIRST_VERSION, CAUSE_MIN_IMPROVEMENT
from training.services.permissions import APPROVE_PERM, TRIGGER_PERM
from training.services.review import NO_DECISION_CONFIRMATION, job_approve, job_cancel, job_reject
from training.services.stages import job_advance
from training.services.start import (
    OPTION_KEYS,
    policies_ensure_all,
    policy_ensure,
    policy_update,
    trigger_training,
)
from training.services.state import (
    ACTIVE_STATUSES,
    APPROVAL_WINDOW,
    CANCELLABLE,
    DEPLOY_WINDOW,
    TESTING_GRACE,
    TRANSITIONS,
    WAIT_RECHECK,
    job_active,
    job_fail,
    job_transition,
)
from training.services.watchdog import experiment_concluded, jobs_watch

__all__ = [
    "ACTIVE_STATUSES",
    "APPROVAL_WINDOW",
    "APPROVE_PERM",
    "CANCELLABLE",
    "CAUSE_AUTO_DEPLOY",
    "CAUSE_FIRST_VERSION",
    "CAUSE_MIN_IMPROVEMENT",
    "DEPLOY_WINDOW",
    "NO_DECISION_CONFIRMATION",
    "OPTION_KEYS",
    "TESTING_GRACE",
    "TRANSITIONS",
    "TRIGGER_PERM",
    "WAIT_RECHECK",
    "ConfirmationRequired",
    "IllegalTransition",
    "JobActive",
    "experiment_concluded",
    "job_active",
    "job_advance",
    "job_approve",
    "job_cancel",
    "job_fail",
    "job_record_event",
    "job_reject",
    "job_transition",
    "jobs_watch",
    "policies_ensure_all",
    "policy_ensure",
    "policy_update",
    "trigger_training",
]
