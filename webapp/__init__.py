"""The web app's logic (Streamlit page: streamlit_app.py); not part of the installed runtime."""
