"""The churn scoring service behind ``scoring/score.py`` (the Azure ML entry script).

Design
------
* One process (``WORKER_COUNT=1`` on the server) loads the MLflow model once (``model``) and validates
  every input against the model's own signature and recorded category levels (``validation``). The
  churn pipeline (one-hot features into a logistic regression) is scored in a compiled form (``linear``)
  from the level codes validation computed, checked at load against ``predict_proba``; any other
  pipeline gets a DataFrame.
* Sync requests (``sync_api``) are scored in the request: JSON rows, MLflow's ``dataframe_split`` /
  ``dataframe_records`` / ``input_data`` bodies, or CSV text. Bad input is a 400 naming the rows.
* Async requests (``app``) carry a ``shared.contracts.AsyncScoringRequest``. They are validated and put
  on a bounded queue (``dispatcher``) and answered 202 at once; a full queue answers 429 with
  ``Retry-After``; a request already queued, running or recently done (same request id and attempt) is
  acknowledged without new work, in a bounded table.
* Worker threads (``SCORING_WORKERS``) each own a Service Bus sender (``publisher``) and a storage
  client (``storage``) for their whole life; no SDK client crosses threads.
* A job (``job``) overlaps three stages: a reader thread streams the blob by SAS URL, inflates gzip under
  a size limit (``source``) and cuts record-aligned chunks; the job thread parses, validates and predicts
  chunk by chunk (``csv_format`` / ``jsonl_format``); the output sink (``sink``) keeps small outputs in
  memory and stages larger ones as blocks of a results blob while prediction continues, committing at
  the end. Memory stays bounded by a few chunks and blocks, whatever the input size.
* Every input problem ends as an ``InferenceResult`` with a stable ``ErrorCode`` (``errors``); bad rows
  are dropped, counted and the first ones reported; no input can stop the server.
* Settings (``settings``) are read once at start-up and fail fast naming the setting; secrets never
  reach ``repr`` or the logs (blob URLs are logged without their query string).

Not handled: jobs in flight when the server stops are lost; the function app's result deadline and
resubmission (a new attempt) cover that.
"""
