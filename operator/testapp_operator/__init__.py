"""testapp-operator: releases test-app from one cluster-scoped TestAppRelease per environment.

Names shared by every module (the API contract lives in docs/design.md):
- GROUP, VERSION, PLURAL, KIND, API_VERSION: the TestAppRelease resource.
- OPERATOR_NAME: who the operator is (managed-by label, events' source, peering, user agent).
- FIELD_MANAGER: the field manager of every write the operator makes (the installer and the
  plugin have their own: INSTALLER_FIELD_MANAGER, PLUGIN_FIELD_MANAGER).
- APP, CONTAINER, HTTP_PORT: the fixed shape of what a release produces.
- *_LABEL / *_ANNOTATION: keys the operator reads or writes.
"""

GROUP = "testapp.dev"
VERSION = "v1"
PLURAL = "testappreleases"
KIND = "TestAppRelease"
API_VERSION = f"{GROUP}/{VERSION}"
OPERATOR_NAME = "testapp-operator"
FIELD_MANAGER = OPERATOR_NAME

APP = "test-app"
CONTAINER = "app"
HTTP_PORT = 8000

# On ControllerRevisions: which release owns it (label), what it was for and how it went.
RELEASE_LABEL = f"{GROUP}/release"
CHANGE_CAUSE_ANNOTATION = f"{GROUP}/change-cause"
# On the release, set with a change: where a promotion came from (`kubectl testapp promote`), and
# (stamped by the admission policy in k8s/operator) who made the change and with which client.
PROMOTED_FROM_ANNOTATION = f"{GROUP}/promoted-from"
CHANGED_BY_ANNOTATION = f"{GROUP}/changed-by"
CHANGED_WITH_ANNOTATION = f"{GROUP}/changed-with"
OUTCOME_ANNOTATION = f"{GROUP}/outcome"
# On the Deployment's Pod template: the revision it runs.
REVISION_ANNOTATION = f"{GROUP}/revision"
# ... and the spec.restartAt it last restarted for.
RESTARTED_AT_ANNOTATION = f"{GROUP}/restarted-at"
# On the Deployment: the fingerprint of the snapshot it runs, and the release generation it was
# last written for (docs/design.md, Two operators at once). Labels, not annotations: a
# Deployment's generation moves with its annotations, and the status would report a rollout.
SNAPSHOT_LABEL = f"{GROUP}/snapshot"
GENERATION_LABEL = f"{GROUP}/generation"
