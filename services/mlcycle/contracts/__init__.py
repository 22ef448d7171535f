"""What services agree on: typed records, their id conventions, topic payloads and repositories.

Services exchange data only through these types, over the store, a topic or an
API; a service never imports another service's package.
"""
