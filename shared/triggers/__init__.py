"""Function triggers: one blueprint module per function (or per family of functions), all thin glue."""
