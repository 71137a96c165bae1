"""Local fake providers: real HTTP servers on 127.0.0.1, and the fixtures that run them.

`http.FakeHTTPServer` is the recording base; `webhook_server.WebhookFake` imitates an
in-house webhook gateway. Fixtures live in `fixtures.py`; a test folder's conftest
imports the ones it uses (`from tests.fakes.fixtures import webhook_server`).
"""
