"""Test support shared by every member: real brokers and message builders.

Fixtures (enabled for the whole repository by the root `conftest.py`, through
`pytest_plugins = ["arks_common.testing.plugin"]`):

- `nats_server`: a real nats-server with JetStream on a free port and a temporary
  store, per test; `.url`, `.stop()`, `.kill()`, `.start()`, `.restart()` (same port,
  same data) for broker-restart tests.
- `valkey_server`: a real Valkey on a free port with an fsync-always AOF, per test;
  same controls.
- `bus`: an `arks_common.messaging.Bus` connected to `nats_server`, with every stream
  and bucket created; closed after the test.
- `redis`: a `redis.asyncio.Redis` client on `valkey_server`.
- `credentials`: an `arks_common.access.Credentials` (a password per NATS and Valkey user);
  `secured_nats_server` / `secured_valkey_server`: the same brokers requiring those users
  with their permissions and ACLs (always embedded, never the `ARKS_TEST_*` servers);
  `admin_bus`: a Bus on `secured_nats_server` as the admin, with every stream and bucket.
  `credentials.nats_settings(user, url)` / `.redis_settings(user, url)` log in as a user.
- an autouse check that fails a test which leaves asyncio tasks running.
- `shared_reference`: the reference material beside the clone (`../shared`); a test that
  requests it, even indirectly, is marked `conformance` and runs only in
  `make conformance` (`arks_common.testing.reference`).

`ARKS_TEST_NATS_URL` / `ARKS_TEST_REDIS_URL` point the fixtures at servers you run
yourself instead (then restart tests cannot control them and fail with a message).
Such servers must be dedicated to tests: every test starts by deleting the Arks
streams and buckets (NATS) and flushing the database (Redis), which is how tests stay
isolated from each other there.

Builders (`arks_common.testing.builders`) make valid messages (`make_usage_event`, …) and
resources (`make_model`, `make_application`, `make_endpoint`, `make_token`, `make_quota`)
with overridable fields.
"""
