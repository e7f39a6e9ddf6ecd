"""Model parameters given at call time, with the sync twins (no ``async`` anywhere).

Port of the seed notebook's "Model parameters can also be indicated during invocation". A call-time
parameter applies to that call only: the model's own ``model_kwargs`` never change (the seed merged them
into its constructor's dict for good). ``invoke`` is the sync twin of ``ainvoke``; it works in a plain
script and inside a running event loop (Jupyter) alike.

    python examples/llama_call_time_temperature.py
"""

from _support import example_endpoint

import azml_client as az


def main() -> None:
    # Emulator: the "openai" deployment speaks the same dedicated schema as a LLaMa deployment.
    with (
        example_endpoint("dedicated", deployment="openai") as endpoint,
        az.LLM(
            **endpoint,
            formatter="openai",
            model_kwargs={"temperature": 0.8, "max_new_tokens": 400},
        ) as llm,
    ):
        print(llm.invoke("Write me a song about sparkling water:", temperature=0.5))
        # Still what the constructor was given: the call-time temperature did not leak.
        print("model_kwargs after the call:", dict(llm.model_kwargs))


if __name__ == "__main__":
    main()
