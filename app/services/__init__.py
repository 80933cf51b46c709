"""The service layer the API, the pages and the CLI all call: validate, store, commit, then publish."""
