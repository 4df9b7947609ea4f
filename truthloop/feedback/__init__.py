"""The feedback service: joins actuals to predictions, measures, alerts and decides the fallback."""
