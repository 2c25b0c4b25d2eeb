"""Load generation: a Locust subprocess (never imported here: gevent patches everything)."""
