"""The built-in jobs, loaded by the job registry on first use (by name, like an
entry point), so importing the registry never imports a product job."""
