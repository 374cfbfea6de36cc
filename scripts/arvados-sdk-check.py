"""Drives a running `convoy api` with the unmodified Arvados Python SDK (arvados-python-client).

Run by ConvoyCLITests with ARVADOS_API_HOST, ARVADOS_API_TOKEN (a user token),
ARVADOS_API_HOST_INSECURE=1 and CONVOY_DISPATCHER_TOKEN set. Exits 0 and prints "ok" when every
call behaved as Arvados' own server would; otherwise an assertion says what differed.
"""
import os
import sys

import arvados
import arvados.errors

host = os.environ["ARVADOS_API_HOST"]
user = arvados.api("v1")  # host, token and insecure from the environment, as users set them
# The SDK retries 409 with back-off for minutes; the dispatcher wants to hear "stale" at once.
dispatcher = arvados.api("v1", host=host, token=os.environ["CONVOY_DISPATCHER_TOKEN"], insecure=True, num_retries=0)

me = user.api_client_authorizations().current().execute()
assert me["uuid"].split("-")[1] == "gj3su", me
assert me["scopes"] == ["all"], me

requests = []
for priority in (3, 9, 5):
    requests.append(user.container_requests().create(body={"container_request": {
        "command": ["echo", str(priority)], "container_image": "busybox", "state": "Committed",
        "priority": priority, "runtime_constraints": {"vcpus": 1, "ram": 64 << 20}, "use_existing": False,
    }}).execute())
uuids = [request["container_uuid"] for request in requests]
assert all(uuids), requests

listed = dispatcher.containers().list(
    filters=[["uuid", "in", uuids], ["state", "=", "Queued"]], order=["priority desc"]).execute()
assert [c["priority"] for c in listed["items"]] == [9, 5, 3], listed
assert listed["items_available"] == 3, listed

first = dispatcher.containers().get(uuid=uuids[0]).execute()
assert first["command"] == ["echo", "3"] and first["state"] == "Queued", first

# Convoy's API fences a dispatcher's changes with its leader's epoch (X-Convoy-Epoch); one
# without it is refused. No leader ran on this database: its epoch is 0.
def fenced(request, **options):
    request.headers["X-Convoy-Epoch"] = "0"
    return request.execute(**options)

try:
    dispatcher.containers().lock(uuid=uuids[0]).execute(num_retries=0)
    sys.exit("a dispatcher's lock without X-Convoy-Epoch was accepted")
except arvados.errors.ApiError as error:
    assert error.resp.status == 428, error

locked = fenced(dispatcher.containers().lock(uuid=uuids[0]))
assert locked["state"] == "Locked" and locked["auth_uuid"], locked
stale = locked["auth_uuid"]
unlocked = fenced(dispatcher.containers().unlock(uuid=uuids[0]))
assert unlocked["state"] == "Queued" and unlocked["auth_uuid"] is None, unlocked

relocked = fenced(dispatcher.containers().lock(uuid=uuids[0]))
running = fenced(dispatcher.containers().update(uuid=uuids[0], body={"container": {
    "state": "Running", "auth_uuid": relocked["auth_uuid"]}}))
assert running["state"] == "Running", running

try:
    fenced(dispatcher.containers().update(uuid=uuids[0], body={"container": {
        "progress": 0.5, "auth_uuid": stale}}), num_retries=0)
    sys.exit("a stale auth_uuid was accepted")
except arvados.errors.ApiError as error:
    assert error.resp.status == 409, error

done = fenced(dispatcher.containers().update(uuid=uuids[0], body={"container": {
    "state": "Complete", "exit_code": 0, "auth_uuid": relocked["auth_uuid"]}}))
assert done["state"] == "Complete" and done["exit_code"] == 0, done
final = user.container_requests().get(uuid=requests[0]["uuid"]).execute()
assert final["state"] == "Final", final

print("ok")
