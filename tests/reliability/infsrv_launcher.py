"""Start Microsoft's Azure ML inference server (azmlinfsrv) on 127.0.0.1 instead of its hard-coded 0.0.0.0.

Run as ``python infsrv_launcher.py --entry_script score.py --port N``; the arguments are azmlinfsrv's own.
Set ``GUNICORN_CMD_ARGS="--no-control-socket"`` so gunicorn writes nothing in the home folder.
"""

from azureml_inference_server_http import amlserver

if __name__ == "__main__":
    # amlserver.run() passes its module-level DEFAULT_HOST (star-imported from .constants) to gunicorn's -b.
    amlserver.DEFAULT_HOST = "127.0.0.1"
    amlserver.run()
