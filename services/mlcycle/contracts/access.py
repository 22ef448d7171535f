"""Which API-key scope each HTTP route needs: the one table every app enforces.

Each service's app looks its routes up here when a request comes in (see
:class:`mlcycle.common.http.auth.RouteAccess`), and refuses to start when one of its
routes is missing from its table, or the table names a route the app does not have.
The authorization matrix test walks every app's OpenAPI document against this table,
so a route cannot be added without saying who may call it.

Health, readiness, metrics and the OpenAPI docs are open on every app
(:data:`mlcycle.common.http.auth.OPEN_ROUTES`); they are not listed here.

The scopes (:class:`~mlcycle.common.keys.Scope`):

- ``ingest``: collector writes;
- ``read``: GETs that return data (comments, labels, runs and their diagnostics, jobs,
  the registry, reports, lineage, stats, transforms, feature sets, the live positive rate);
- ``label``: label runs, human labels and moderators' decisions;
- ``predict``: predictions (and the online featurization they rest on), model status and
  metadata on the model server;
- ``train``: training jobs, fitting transforms, building feature sets, retraining runs
  (asking for one, reporting its stages);
- ``admin``: all of the above, plus promote, rollback, starting and steering rollouts,
  setting the current transform, and stopping or forcing a retraining run.
"""

from __future__ import annotations

from collections.abc import Mapping
from types import MappingProxyType

from mlcycle.common.keys import Scope

# (HTTP method, route template as the OpenAPI document writes it)
Route = tuple[str, str]

ROUTE_SCOPES: Mapping[str, Mapping[Route, Scope]] = MappingProxyType(
    {
        "collector": {
            ("POST", "/v1/comments"): Scope.INGEST,
            ("POST", "/v1/votes"): Scope.INGEST,
            ("GET", "/v1/comments"): Scope.READ,
            ("GET", "/v1/comments/{comment_id}"): Scope.READ,
            ("GET", "/v1/stats"): Scope.READ,
        },
        "labeler": {
            ("POST", "/v1/label-runs"): Scope.LABEL,
            ("GET", "/v1/label-runs"): Scope.READ,
            ("GET", "/v1/label-runs/{run_id}"): Scope.READ,
            ("GET", "/v1/labels"): Scope.READ,
            ("GET", "/v1/labels/{item_id}"): Scope.READ,
            ("GET", "/v1/review-queue"): Scope.READ,
            ("GET", "/v1/label-issues"): Scope.READ,
            ("POST", "/v1/labels"): Scope.LABEL,
        },
        "featurizer": {
            # Online featurization is what serving a prediction rests on, not training.
            ("POST", "/v1/featurize"): Scope.PREDICT,
            ("GET", "/v1/transforms"): Scope.READ,
            ("GET", "/v1/transforms/{version}"): Scope.READ,
            # Fitting needs `train`; making the fit current also needs `admin` (checked by
            # the route, which knows the body).
            ("POST", "/v1/transforms"): Scope.TRAIN,
            ("POST", "/v1/transforms/{version}/current"): Scope.ADMIN,
            ("GET", "/v1/feature-sets"): Scope.READ,
            ("POST", "/v1/feature-sets"): Scope.TRAIN,
            ("GET", "/v1/feature-sets/{version}/{label_run}"): Scope.READ,
        },
        "trainer": {
            ("POST", "/v1/jobs"): Scope.TRAIN,
            ("GET", "/v1/jobs"): Scope.READ,
            ("GET", "/v1/jobs/{job_id}"): Scope.READ,
            ("GET", "/v1/jobs/{job_id}/trials"): Scope.READ,
            ("GET", "/v1/jobs/{job_id}/report"): Scope.READ,
            ("GET", "/v1/models"): Scope.READ,
            ("GET", "/v1/models/{version}"): Scope.READ,
            ("POST", "/v1/models/{version}:promote"): Scope.ADMIN,
            ("POST", "/v1/models:rollback"): Scope.ADMIN,
            ("POST", "/v1/rollouts"): Scope.ADMIN,
            ("GET", "/v1/rollouts"): Scope.READ,
            ("GET", "/v1/rollouts/{rollout_id}"): Scope.READ,
            ("POST", "/v1/rollouts/{rollout_id}:{order}"): Scope.ADMIN,
            # A run is asked for and reported by the runner like a training job; `force`
            # (over the cooldown and the budget) also needs `admin`, checked by the route.
            ("POST", "/v1/retraining-runs"): Scope.TRAIN,
            ("GET", "/v1/retraining-runs"): Scope.READ,
            ("GET", "/v1/retraining-runs/{run_id}"): Scope.READ,
            ("POST", "/v1/retraining-runs/{run_id}/stages"): Scope.TRAIN,
            ("POST", "/v1/retraining-runs/{run_id}:stop"): Scope.ADMIN,
        },
        "inference": {
            ("POST", "/v1/predict"): Scope.PREDICT,
            ("POST", "/v1/models/{name}:predict"): Scope.PREDICT,
            ("GET", "/v1/lineage/{comment_id}"): Scope.READ,
            ("GET", "/v1/positive-rate"): Scope.READ,
            ("GET", "/v1/monitoring"): Scope.READ,
            ("GET", "/v1/monitoring/history"): Scope.READ,
            ("POST", "/v1/feedback"): Scope.LABEL,
            # Perspective's AnalyzeComment: a prediction (and its explanation).
            ("POST", "/v1alpha1/comments:analyze"): Scope.PREDICT,
        },
        # TF Serving's REST API is one route; every path under it (model status, metadata,
        # :predict, :classify, :regress) serves predictions. It has no administration over
        # REST: reloading the config is gRPC's HandleReloadConfigRequest (`admin`).
        "modelserver": {
            ("GET", "/v1/{path}"): Scope.PREDICT,
            ("POST", "/v1/{path}"): Scope.PREDICT,
        },
    }
)


# The labeler's console (/console): HTML pages and the two POSTs its script sends. The
# console checks these itself, with the key its login page keeps in a cookie (the labeler's
# API table above does not list them; its OpenAPI document does not show them).
CONSOLE_SCOPES: Mapping[Route, Scope] = MappingProxyType(
    {
        ("GET", "/console/queue"): Scope.READ,
        ("GET", "/console/queue/card"): Scope.READ,
        ("POST", "/console/labels"): Scope.LABEL,
        ("POST", "/console/retractions"): Scope.LABEL,
        ("GET", "/console/runs"): Scope.READ,
        ("GET", "/console/runs/{run_id}/report"): Scope.READ,
        ("GET", "/console/models"): Scope.READ,
        # An admin's actions, passed on to the trainer with the admin's own key.
        ("POST", "/console/models/rollback"): Scope.ADMIN,
        ("POST", "/console/models/promote"): Scope.ADMIN,
        ("POST", "/console/rollouts/steer"): Scope.ADMIN,
        ("GET", "/console/monitoring"): Scope.READ,
    }
)
# Open: the way in, the way out, and the console's own CSS and script.
CONSOLE_OPEN_ROUTES: frozenset[Route] = frozenset(
    {
        ("GET", "/console"),
        ("GET", "/console/login"),
        ("POST", "/console/login"),
        ("POST", "/console/logout"),
        ("GET", "/console/static/{name}"),
    }
)


def route_scopes(service: str) -> Mapping[Route, Scope]:
    """The route → scope table of ``service`` (KeyError names an unknown service)."""
    return ROUTE_SCOPES[service]
