"""What the tests share beside the fixtures of conftest.py: real servers on 127.0.0.1 (a webhook
receiver, a scripted platform stub), a manual clock, settings and outbox writers, and the rigs of
the reliability, crash, notifier, source, store and deployment tests.

Imported as `helpers.<module>`: the root conftest.py puts tests/ on sys.path.
"""
