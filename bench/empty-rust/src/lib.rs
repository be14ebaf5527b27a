use worker::{event, Context, Env, Request, Response, Result};

#[event(fetch)]
async fn fetch(mut req: Request, _env: Env, _ctx: Context) -> Result<Response> {
    let _ = req.bytes().await?;
    Ok(Response::empty()?.with_status(204))
}
