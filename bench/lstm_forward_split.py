"""LSTM forward loop split: the T recurrent GEMMs alone vs the per-step element-wise gate
arithmetic alone (the same calls as layers/lstm.py), interleaved, 1 thread, min and median.

    python bench/lstm_forward_split.py
"""
import numpy as np, time
from threadpoolctl import threadpool_limits
threadpool_limits(1)
from bptt.functional import gate_tanh_scale
rng=np.random.default_rng(0)
T,B,H=64,32,128
gates=rng.standard_normal((T,B,4*H)).astype(np.float32); hs=rng.standard_normal((T+1,B,H)).astype(np.float32)
cs=np.zeros((T+1,B,H),np.float32); tanh_c=np.empty((T,B,H),np.float32)
WT=rng.standard_normal((H,4*H)).astype(np.float32)*0.1; rec=np.empty((B,4*H),np.float32); ig=np.empty((B,H),np.float32)
scale,shift=gate_tanh_scale("ssts",H,np.float32)
def gemms():
    for t in range(T): np.dot(hs[t], WT, out=rec)
def elementwise():
    g=gates.copy()
    for t in range(T):
        a=g[t]; np.add(a,rec,out=a); np.tanh(a,out=a); np.multiply(a,scale,out=a); np.add(a,shift,out=a)
        c_t=cs[t+1]; np.multiply(a[:,H:2*H],cs[t],out=c_t); np.multiply(a[:,:H],a[:,2*H:3*H],out=ig); np.add(c_t,ig,out=c_t)
        np.tanh(c_t,out=tanh_c[t]); np.multiply(a[:,3*H:],tanh_c[t],out=hs[t+1])
ts={"gemms":[], "elementwise":[]}
for _ in range(40):
    for k,f in (("gemms",gemms),("elementwise",elementwise)):
        t=time.perf_counter(); f(); ts[k].append(time.perf_counter()-t)
print({k:"min %.2f med %.2f ms"%(min(v)*1e3,np.median(v)*1e3) for k,v in ts.items()})
