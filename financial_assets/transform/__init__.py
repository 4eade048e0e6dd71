"""The star schema transform: pure PySpark, run by local Spark and by AWS Glue alike."""
