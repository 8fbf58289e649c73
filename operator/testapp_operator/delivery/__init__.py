"""The delivery tools CI runs, not the operator: `install` (the CRDs and the operator, by server-
side apply) and `gcp` (GKE credentials from a GitLab job's OIDC token). They ship in the operator
image, where the pipeline's install and deploy jobs run them with `python -m`."""
