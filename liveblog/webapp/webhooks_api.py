"""Admin API for webhook subscriptions (see CONTRACT.md; every route needs the admin role).

Beyond the contract's routes: ``PATCH /api/webhooks/{id}`` changes url/blogs/events/description or
``state`` (``{"state": "active"}`` re-enables a disabled subscription; its queued deliveries resume).
"""

from __future__ import annotations

from starlette.requests import Request
from starlette.responses import Response
from starlette.routing import BaseRoute, Route

from liveblog.webapp.api import json_response
from liveblog.webapp.auth import require
from liveblog.webapp.inputs import json_object, query_int
from liveblog.webapp.problems import Problem
from liveblog.webhooks.queue import DeliveryQueue
from liveblog.webhooks.replay import replay
from liveblog.webhooks.ssrf import AddressPolicy
from liveblog.webhooks.subscriptions import Subscriptions


def _subscriptions(request: Request) -> Subscriptions:
    state = request.app.state
    if not hasattr(state, "webhook_subscriptions"):
        state.webhook_subscriptions = Subscriptions(state.redis, AddressPolicy(state.settings.allowed_networks))
    return state.webhook_subscriptions


async def create_subscription(request: Request) -> Response:
    await require(request, "admin")
    created = await _subscriptions(request).create(await json_object(request))
    return json_response(created, 201, headers={"Location": f"/api/webhooks/{created['id']}"})


async def list_subscriptions(request: Request) -> Response:
    await require(request, "admin")
    return json_response({"webhooks": await _subscriptions(request).list()})


async def get_subscription(request: Request) -> Response:
    await require(request, "admin")
    return json_response(await _subscriptions(request).get(request.path_params["sub_id"]))


async def update_subscription(request: Request) -> Response:
    await require(request, "admin")
    fields = await json_object(request)
    return json_response(await _subscriptions(request).update(request.path_params["sub_id"], fields))


async def delete_subscription(request: Request) -> Response:
    await require(request, "admin")
    await _subscriptions(request).delete(request.path_params["sub_id"])
    return Response(status_code=204)


async def list_deliveries(request: Request) -> Response:
    await require(request, "admin")
    limit = query_int(request, "limit", 50, low=1, high=request.app.state.settings.webhook_log_size)
    deliveries = await _subscriptions(request).deliveries(request.path_params["sub_id"], limit)
    return json_response({"deliveries": deliveries})


async def replay_deliveries(request: Request) -> Response:
    await require(request, "admin")
    fields = await json_object(request)
    if set(fields) != {"since_event_id"}:
        raise Problem(422, "send exactly {\"since_event_id\": \"<change ID>\"} (\"0\" replays all that is kept)")
    sub, _ = await _subscriptions(request).load(request.path_params["sub_id"])
    state = request.app.state
    result = await replay(state.store, state.presenter, DeliveryQueue(state.redis), sub, fields.get("since_event_id"))
    return json_response(result, 202)


routes: list[BaseRoute] = [
    Route("/api/webhooks", list_subscriptions, methods=["GET"]),
    Route("/api/webhooks", create_subscription, methods=["POST"]),
    Route("/api/webhooks/{sub_id}", get_subscription, methods=["GET"]),
    Route("/api/webhooks/{sub_id}", update_subscription, methods=["PATCH"]),
    Route("/api/webhooks/{sub_id}", delete_subscription, methods=["DELETE"]),
    Route("/api/webhooks/{sub_id}/deliveries", list_deliveries, methods=["GET"]),
    Route("/api/webhooks/{sub_id}/replay", replay_deliveries, methods=["POST"]),
]
