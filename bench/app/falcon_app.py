"""The `/` route of test-app written in bare falcon 2.0 (hug's own base): the benchmark's
baseline. Same JSON body, same access-log and metrics middleware, served by the same gunicorn
config."""

import os

import falcon

from accesslog import AccessLog
from metrics import RequestMetrics

NAME = os.environ.get("APP_NAME", "test-app")
ENV = os.environ.get("APP_ENV", "dev")


class Root:
    def on_get(self, req: falcon.Request, resp: falcon.Response) -> None:
        resp.media = {"app": NAME, "env": ENV, "message": f"Hello from {NAME} in {ENV}"}


app = falcon.API(middleware=[AccessLog(app=NAME, env=ENV), RequestMetrics()])
app.add_route("/", Root())
