"""ComfyUI node classes (V1 API), a thin adapter over univg_core."""

from .conditioning import UniVGConditioning
from .core_sampling import (
    UniVGBGNSigmas,
    UniVGFirstFrameConditioning,
    UniVGKeyframeConditioning,
    UniVGMultiConditionGuider,
)
from .example_image import UniVGExampleImage
from .extend import UniVGExtendVideo
from .loader import UniVGCheckpointLoader, register_folder
from .samplers import UniVGAnimationSampler, UniVGBaseSampler, UniVGUpscaler
from .vae import UniVGVAEDecode, UniVGVAEEncode

register_folder()

NODE_CLASS_MAPPINGS = {
    "UniVGCheckpointLoader": UniVGCheckpointLoader,
    "UniVGConditioning": UniVGConditioning,
    "UniVGBaseSampler": UniVGBaseSampler,
    "UniVGAnimationSampler": UniVGAnimationSampler,
    "UniVGUpscaler": UniVGUpscaler,
    "UniVGVAEDecode": UniVGVAEDecode,
    "UniVGVAEEncode": UniVGVAEEncode,
    "UniVGMultiConditionGuider": UniVGMultiConditionGuider,
    "UniVGFirstFrameConditioning": UniVGFirstFrameConditioning,
    "UniVGKeyframeConditioning": UniVGKeyframeConditioning,
    "UniVGBGNSigmas": UniVGBGNSigmas,
    "UniVGExampleImage": UniVGExampleImage,
    "UniVGExtendVideo": UniVGExtendVideo,
}

NODE_DISPLAY_NAME_MAPPINGS = {
    "UniVGCheckpointLoader": "UniVG Checkpoint Loader",
    "UniVGConditioning": "UniVG Multi-Conditioning (text + image)",
    "UniVGBaseSampler": "UniVG Base Sampler (F_B)",
    "UniVGAnimationSampler": "UniVG Animation Sampler (F_A)",
    "UniVGUpscaler": "UniVG BGN Upscaler (F_SR)",
    "UniVGVAEDecode": "UniVG Video VAE Decode",
    "UniVGVAEEncode": "UniVG Video VAE Encode",
    "UniVGMultiConditionGuider": "UniVG Multi-Condition Guider",
    "UniVGFirstFrameConditioning": "UniVG First-Frame Conditioning (animation)",
    "UniVGKeyframeConditioning": "UniVG Keyframe Conditioning (interpolation, loop)",
    "UniVGBGNSigmas": "UniVG BGN Sigmas",
    "UniVGExampleImage": "UniVG Example Image",
    "UniVGExtendVideo": "UniVG Extend Video",
}
