"""Command-line client for the asynchronous inference service (`asyncinfer` / `python -m client`).

``submit`` uploads files to the input container and can wait for their results on a Service Bus session,
``score`` calls the scoring endpoint synchronously, ``status``/``watch`` read the function app's request ledger.
"""
