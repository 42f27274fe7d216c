//! Reading tensors back from the device: always async and batched, the only kind of read
//! WebGPU allows in wasm.

use burn::tensor::{Tensor, Transaction};

use crate::error::{Error, Result};

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
    let datas = tx.execute_async().await?;
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
