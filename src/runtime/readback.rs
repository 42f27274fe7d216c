//! Reading tensors back from the device: always async and batched, the only kind of read
//! WebGPU allows in wasm.

use std::sync::atomic::{AtomicU32, Ordering};

use burn::tensor::{Tensor, TensorData, Transaction};

use crate::error::{Error, Result};

/// How long a read-back waits for the device before the device is taken as lost or stuck (a
/// "device" error: the app then continues on the CPU). Generous: one read waits for all the
/// work queued before it, a whole update on an emulated GPU.
static TIMEOUT_MS: AtomicU32 = AtomicU32::new(300_000);

/// Sets how long a read-back may wait (in the browser; a native read blocks until it is done).
pub fn set_readback_timeout(ms: u32) {
    TIMEOUT_MS.store(ms.max(1), Ordering::Relaxed);
}

/// Runs a transaction's reads, refusing to wait past the read-back timeout.
pub async fn execute(tx: Transaction) -> Result<Vec<TensorData>> {
    Ok(within_timeout(tx.execute_async()).await??)
}

#[cfg(not(target_arch = "wasm32"))]
async fn within_timeout<T>(work: impl Future<Output = T>) -> Result<T> {
    Ok(work.await)
}

/// `work`, or a "device" error once the timeout has passed (a JS timer, cleared when the work
/// finishes first).
#[cfg(target_arch = "wasm32")]
async fn within_timeout<T>(work: impl Future<Output = T>) -> Result<T> {
    use std::pin::Pin;
    use std::task::Poll;
    use wasm_bindgen::{JsCast, JsValue};

    let ms = TIMEOUT_MS.load(Ordering::Relaxed);
    let global = js_sys::global();
    let timers = |name: &str| {
        js_sys::Reflect::get(&global, &name.into())
            .ok()
            .and_then(|f| f.dyn_into::<js_sys::Function>().ok())
    };
    let (Some(set_timeout), Some(clear_timeout)) = (timers("setTimeout"), timers("clearTimeout"))
    else {
        return Ok(work.await);
    };
    let mut id = JsValue::UNDEFINED;
    let timer = js_sys::Promise::new(&mut |resolve, _| {
        id = set_timeout
            .call2(&global, &resolve, &ms.into())
            .unwrap_or(JsValue::UNDEFINED);
    });
    let mut timer = wasm_bindgen_futures::JsFuture::from(timer);
    let mut work = std::pin::pin!(work);
    let outcome = std::future::poll_fn(|cx| {
        if let Poll::Ready(value) = work.as_mut().poll(cx) {
            return Poll::Ready(Ok(value));
        }
        if Pin::new(&mut timer).poll(cx).is_ready() {
            return Poll::Ready(Err(Error::Device(format!(
                "the GPU did not answer a read within {ms} ms: it may be lost or stuck"
            ))));
        }
        Poll::Pending
    })
    .await;
    let _ = clear_timeout.call1(&global, &id);
    outcome
}

/// One vector, read on its own.
pub async fn read_f32(t: Tensor<1>) -> Result<Vec<f32>> {
    let [v] = read_all([t]).await?;
    Ok(v)
}

/// Reads several vectors in one device transfer (the only kind of read allowed on WebGPU in wasm).
pub async fn read_all<const N: usize>(tensors: [Tensor<1>; N]) -> Result<[Vec<f32>; N]> {
    let mut tx = Transaction::default();
    for t in tensors {
        tx = tx.register(t);
    }
    let datas = execute(tx).await?;
    let vecs = datas
        .into_iter()
        .map(|d| {
            d.convert::<f32>()
                .try_to_vec::<f32>()
                .map_err(|e| Error::Device(format!("{e:?}")))
        })
        .collect::<Result<Vec<_>>>()?;
    Ok(vecs.try_into().expect("one result per tensor"))
}
