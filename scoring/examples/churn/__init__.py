"""The churn example: synthetic telco-churn data (``data``, ``schema``), its model (``train``) and sample files."""
