"""Processors for the data tests, built like the tiny presets (image size 32, patch 8, 8 query tokens)."""

from transformers import Blip2Processor, BlipImageProcessor, CLIPImageProcessor, LlavaProcessor
from transformers.processing_utils import ProcessorMixin

from lightning_ssd.data.tokenizer import default_tokenizer

IMAGE_SIZE = 32
NUM_QUERY_TOKENS = 8
PATCH_SIZE = 8
LLAVA_IMAGE_TOKENS = (IMAGE_SIZE // PATCH_SIZE) ** 2


def tiny_processor(family: str) -> ProcessorMixin:
    tokenizer = default_tokenizer()
    if family == "llava":
        image_processor = CLIPImageProcessor(size={"shortest_edge": IMAGE_SIZE},
                                             crop_size={"height": IMAGE_SIZE, "width": IMAGE_SIZE})
        return LlavaProcessor(image_processor, tokenizer, patch_size=PATCH_SIZE,
                              vision_feature_select_strategy="default", image_token="<image>",
                              num_additional_image_tokens=1)
    image_processor = BlipImageProcessor(size={"height": IMAGE_SIZE, "width": IMAGE_SIZE})
    return Blip2Processor(image_processor, tokenizer, num_query_tokens=NUM_QUERY_TOKENS)
