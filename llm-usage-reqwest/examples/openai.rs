//! Calls a real OpenAI-compatible provider through the middleware, streamed, and prints
//! the usage record: `OPENAI_API_KEY=… cargo run -p llm-usage-reqwest --features tls
//! --example openai`. Without `OPENAI_API_KEY` it says so and exits successfully (nothing
//! is called). `OPENAI_BASE_URL` (default `https://api.openai.com/v1`) points it at another
//! OpenAI-compatible server, `LLM_MODEL` (default `gpt-4o-mini`) picks the model.

use futures_util::StreamExt;
use llm_usage_reqwest::{LlmUsageMiddleware, UsageEvent};

#[tokio::main]
async fn main() -> Result<(), Box<dyn std::error::Error>> {
    let Ok(key) = std::env::var("OPENAI_API_KEY") else {
        println!("OPENAI_API_KEY is not set: skipping the call to a real provider.");
        return Ok(());
    };
    let base =
        std::env::var("OPENAI_BASE_URL").unwrap_or_else(|_| "https://api.openai.com/v1".to_owned());
    if base.starts_with("https:") && !cfg!(feature = "tls") {
        println!("{base} needs TLS: run with `--features tls`.");
        return Ok(());
    }
    let model = std::env::var("LLM_MODEL").unwrap_or_else(|_| "gpt-4o-mini".to_owned());
    let client = reqwest_middleware::ClientBuilder::new(reqwest::Client::new())
        .with(LlmUsageMiddleware::new().on_record(|ev: &UsageEvent| {
            println!(
                "\n--- usage ({:?}, {:?}):\n{:#?}",
                ev.outcome, ev.status, ev.record
            );
        }))
        .build();
    let body = serde_json::json!({
        "model": model,
        "stream": true,
        "stream_options": {"include_usage": true},
        "messages": [{"role": "user", "content": "Say hello in five words."}],
    });
    let res = client
        .post(format!("{base}/chat/completions"))
        .bearer_auth(key)
        .header("content-type", "application/json")
        .body(body.to_string())
        .send()
        .await?;
    let mut stream = res.bytes_stream();
    while let Some(chunk) = stream.next().await {
        print!("{}", String::from_utf8_lossy(&chunk?));
    }
    Ok(())
}
