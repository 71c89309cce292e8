#!/usr/bin/env python3
"""The fixtures the MCP conformance suite's server scenarios call (test_simple_text,
test://static-text, test_simple_prompt, ...), on the official Python SDK's MCPServer.

The suite's own fixture server (examples/servers/typescript/everything-server.ts in
modelcontextprotocol/conformance) is not published to npm; server-everything lacks the
fixtures, so against it most scenarios fail (or pass vacuously). This one implements them from
the scenario descriptions, so that a direct run and a run through the gateway exercise real
sampling, elicitation, progress, logging, resources, prompts and completion.

  python conformance_server.py --port 9000     # Streamable HTTP on http://127.0.0.1:9000/mcp
  python conformance_server.py --stdio         # stdio
"""

from __future__ import annotations

import argparse
import asyncio
import base64
import json

from mcp.server.mcpserver import Context, MCPServer
from mcp.server.mcpserver.exceptions import ToolError
from mcp.server.mcpserver.prompts.base import UserMessage
from mcp.types import (
    AudioContent,
    Completion,
    EmbeddedResource,
    EmptyResult,
    ImageContent,
    SamplingMessage,
    SetLevelRequestParams,
    SubscribeRequestParams,
    TextContent,
    TextResourceContents,
    UnsubscribeRequestParams,
)
from pydantic import BaseModel, Field

# a 1x1 red PNG and a tiny silent WAV
PNG = base64.b64decode(
    "iVBORw0KGgoAAAANSUhEUgAAAAEAAAABCAYAAAAfFcSJAAAADUlEQVR42mP8z8DwHwAFBQIAX8jx0gAAAABJRU5ErkJggg=="
)
WAV = base64.b64decode("UklGRiQAAABXQVZFZm10IBAAAAABAAEAQB8AAIA+AAACABAAZGF0YQAAAAA=")
PNG_B64 = base64.b64encode(PNG).decode()
WAV_B64 = base64.b64encode(WAV).decode()

app = MCPServer("conformance-fixtures", version="1.0.0")


@app.tool(structured_output=False)
def test_simple_text() -> list[TextContent]:
    """Conformance fixture test_simple_text."""
    return [TextContent(type="text", text="This is a simple text response for testing.")]


@app.tool(structured_output=False)
def test_image_content() -> list[ImageContent]:
    """Conformance fixture test_image_content."""
    return [ImageContent(type="image", data=PNG_B64, mime_type="image/png")]


@app.tool(structured_output=False)
def test_audio_content() -> list[AudioContent]:
    """Conformance fixture test_audio_content."""
    return [AudioContent(type="audio", data=WAV_B64, mime_type="audio/wav")]


def _embedded(uri: str, text: str, mime: str = "text/plain") -> EmbeddedResource:
    return EmbeddedResource(type="resource", resource=TextResourceContents(uri=uri, mime_type=mime, text=text))


@app.tool(structured_output=False)
def test_embedded_resource() -> list[EmbeddedResource]:
    """Conformance fixture test_embedded_resource."""
    return [_embedded("test://embedded-resource", "This is an embedded resource content.")]


@app.tool(structured_output=False)
def test_multiple_content_types() -> list[TextContent | ImageContent | EmbeddedResource]:
    """Conformance fixture test_multiple_content_types."""
    return [
        TextContent(type="text", text="Multiple content types test:"),
        ImageContent(type="image", data=PNG_B64, mime_type="image/png"),
        _embedded("test://mixed-content-resource", json.dumps({"test": "data", "value": 123}), "application/json"),
    ]


@app.tool()
async def test_tool_with_logging(ctx: Context) -> str:
    """Conformance fixture test_tool_with_logging."""
    for message in ("Tool execution started", "Tool processing data", "Tool execution completed"):
        await ctx.info(message)
        await asyncio.sleep(0.05)
    return "Logging test completed"


@app.tool()
async def test_tool_with_progress(ctx: Context) -> str:
    """Conformance fixture test_tool_with_progress."""
    for done in (0, 50, 100):
        await ctx.report_progress(done, 100)
        await asyncio.sleep(0.05)
    return "Progress test completed"


@app.tool()
def test_error_handling() -> str:
    """Conformance fixture test_error_handling."""
    raise ToolError("This tool intentionally returns an error for testing")


@app.tool()
async def test_sampling(prompt: str, ctx: Context) -> str:
    """Conformance fixture test_sampling."""
    result = await ctx.session.create_message(
        messages=[SamplingMessage(role="user", content=TextContent(type="text", text=prompt))], max_tokens=100,
        related_request_id=ctx.request_id,
    )
    text = getattr(result.content, "text", "")
    return f"LLM response: {text}"


class UserInfo(BaseModel):
    username: str = Field(description="User's response")
    email: str = Field(description="User's email address")


@app.tool()
async def test_elicitation(message: str, ctx: Context) -> str:
    """Conformance fixture test_elicitation."""
    answer = await ctx.elicit(message, UserInfo)
    content = answer.data.model_dump() if answer.action == "accept" and answer.data else None
    return f"User response: action={answer.action}, content={json.dumps(content)}"


@app.resource("test://static-text", mime_type="text/plain")
def static_text() -> str:
    return "This is the content of the static text resource."


@app.resource("test://static-binary", mime_type="image/png")
def static_binary() -> bytes:
    return PNG


@app.resource("test://template/{id}/data", mime_type="application/json")
def template_data(id: str) -> str:
    return json.dumps({"id": id, "templateTest": True, "data": f"Data for ID: {id}"})


@app.resource("test://watched-resource", mime_type="text/plain")
def watched() -> str:
    return "Watched resource content"


@app.prompt()
def test_simple_prompt() -> str:
    """Conformance fixture test_simple_prompt."""
    return "This is a simple prompt for testing."


@app.prompt()
def test_prompt_with_arguments(arg1: str, arg2: str) -> str:
    """Conformance fixture test_prompt_with_arguments."""
    return f"Prompt with arguments: arg1='{arg1}', arg2='{arg2}'"


@app.prompt()
def test_prompt_with_embedded_resource(resourceUri: str) -> list[UserMessage]:  # noqa: N803 - the suite's name
    """Conformance fixture test_prompt_with_embedded_resource."""
    return [UserMessage(_embedded(resourceUri, "Embedded resource content for testing.")),
            UserMessage("Please process the embedded resource above.")]


@app.prompt()
def test_prompt_with_image() -> list[UserMessage]:
    """Conformance fixture test_prompt_with_image."""
    return [UserMessage(ImageContent(type="image", data=PNG_B64, mime_type="image/png")),
            UserMessage("Please analyze the image above.")]


@app.completion()
async def complete(ref, argument, context):  # noqa: ANN001
    words = ["paris", "park", "party"]
    return Completion(values=[w for w in words if w.startswith(argument.value)], total=len(words), has_more=False)


async def _accept(ctx, params):  # noqa: ANN001
    return EmptyResult()


# logging/setLevel and resources/(un)subscribe: accepted (the scenarios check the round trip)
for _method, _params in (("logging/setLevel", SetLevelRequestParams), ("resources/subscribe", SubscribeRequestParams),
                         ("resources/unsubscribe", UnsubscribeRequestParams)):
    app._lowlevel_server.add_request_handler(_method, _params, _accept)


def main() -> None:
    parser = argparse.ArgumentParser()
    parser.add_argument("--port", type=int)
    parser.add_argument("--stdio", action="store_true")
    args = parser.parse_args()
    if args.stdio:
        app.run("stdio")
        return
    import uvicorn

    uvicorn.run(app.streamable_http_app(), host="127.0.0.1", port=args.port, log_level="warning")


if __name__ == "__main__":
    main()
