"""Static files of the web app (shipped as package data)."""
