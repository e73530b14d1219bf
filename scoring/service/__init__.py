"""The scoring service behind ``scoring/score.py`` (the Azure ML entry script), for any MLflow model.

Design
------
* One process (``WORKER_COUNT=1`` on the server) loads the MLflow model once (``model``: the model port;
  sklearn flavor when present, else pyfunc) and validates every input against the model's own signature
  and, where its metadata declares them, category levels (``validation``: one path for every format).
  The model answers with columns (``output``: the shapes by model kind are tabled in
  ``shared.contracts``), which each format writes. The standard one-hot + scaler + logistic regression
  pipeline is scored in a compiled form (``linear``), and an ordinal-encoded pipeline's feature step is
  computed from the validated columns (``ordinal``), each where it is proven equal to the model at load; any
  other model gets a DataFrame.
* Sync requests (``sync_api``) are scored in the request: what ``mlflow models serve`` accepts
  (``dataframe_split``, ``dataframe_records``, ``instances``, ``inputs``), ``input_data``, this project's
  ``data`` rows, or CSV text. Bad input is a 400 naming the rows.
* Async requests (``app``) carry a ``shared.contracts.AsyncScoringRequest``. They are validated and put
  on a bounded queue (``dispatcher``) and answered 202 at once; a full queue answers 429 with
  ``Retry-After``; a request already queued, running or recently done (same request id and attempt) is
  acknowledged without new work, in a bounded table.
* Worker threads (``SCORING_WORKERS``) each own a Service Bus sender (``publisher``) and their storage
  clients (``storage``: one HTTP session and one SDK pipeline per input account for every input blob) for
  their whole life; no SDK client crosses threads. The results of a job of several small files go out
  together, one message batch per reply session, each still its own message.
* A job (``job``) overlaps three stages: a reader thread streams the blob by SAS URL, inflates gzip under
  a size limit (``source``) and cuts record-aligned chunks; the job thread parses, validates and predicts
  chunk by chunk (the request's format from ``formats``: ``csv_format`` / ``jsonl_format``); the output
  sink (``sink``) keeps small outputs in memory and stages larger ones as blocks of a results blob while
  prediction continues, committing at the end. Memory stays bounded by a few chunks and blocks, whatever the input size.
* Every input problem ends as an ``InferenceResult`` with a stable ``ErrorCode`` (``errors``); bad rows
  are dropped, counted and the first ones reported; no input can stop the server.
* Settings (``settings``) are read once at start-up and fail fast naming the setting; secrets never
  reach ``repr`` or the logs (blob URLs are logged without their query string).

Not handled: jobs in flight when the server stops are lost; the function app's result deadline and
resubmission (a new attempt) cover that.
"""
