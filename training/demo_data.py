"""The demo shop's FAQ: true answers, the FAQ's own wording, and how customers actually ask.

``in_launch_faq`` marks the topics the first model (v1) was trained on. Customers also ask about the
other topics and phrase known ones in ways v1 has never seen, so v1 answers some questions wrongly; the
simulator's customers correct some of those answers, and a retrain on that feedback visibly raises the
success rate.
"""

# ruff: noqa: E501  (the answers are data: one answer per line reads better than wrapped fragments)

from __future__ import annotations

FAQ: list[dict] = [
    {
        "topic": "order_status",
        "in_launch_faq": True,
        "question": "How can I track my order?",
        "answer": "You can track your order under My Account > Orders; each shipped order has a tracking link.",
        "paraphrases": [
            "where is my package",
            "Where's my order? It hasn't arrived yet",
            "how do I see the tracking number for my parcel",
            "can you tell me the delivery status of my purchase",
            "track order",
            "my parcel is late, where can I follow it",
        ],
    },
    {
        "topic": "return_policy",
        "in_launch_faq": True,
        "question": "What is your return policy?",
        "answer": "You can return unused items within 30 days of delivery for a full refund.",
        "paraphrases": [
            "can I send something back",
            "how many days do I have to return an item",
            "is it possible to return a product I don't like",
            "return window?",
            "I want to give back the shoes I bought, is that allowed",
            "what's the deadline for returns",
        ],
    },
    {
        "topic": "refund_time",
        "in_launch_faq": True,
        "question": "How long does a refund take?",
        "answer": "Refunds are issued to your original payment method within 5 business days after we receive the return.",
        "paraphrases": [
            "when will I get my money back",
            "I returned my order, when is the refund coming",
            "how long until the refund shows on my card",
            "refund still not received",
            "how many days for reimbursement",
        ],
    },
    {
        "topic": "shipping_cost",
        "in_launch_faq": True,
        "question": "How much does shipping cost?",
        "answer": "Standard shipping costs 4.95 and is free for orders over 50.",
        "paraphrases": [
            "what are the delivery fees",
            "is shipping free",
            "do you charge for postage",
            "how much is delivery",
            "minimum order for free shipping",
        ],
    },
    {
        "topic": "delivery_time",
        "in_launch_faq": True,
        "question": "How long does delivery take?",
        "answer": "Standard delivery takes 2 to 4 business days; express delivery arrives the next business day.",
        "paraphrases": [
            "when will my order arrive",
            "how fast do you ship",
            "how many days until I receive my order",
            "delivery time for standard shipping",
            "do you have next day delivery",
        ],
    },
    {
        "topic": "payment_methods",
        "in_launch_faq": True,
        "question": "Which payment methods do you accept?",
        "answer": "We accept Visa, Mastercard, American Express, PayPal and Apple Pay.",
        "paraphrases": [
            "can I pay with paypal",
            "do you take credit cards",
            "what ways can I pay",
            "is apple pay accepted",
            "payment options",
        ],
    },
    {
        "topic": "cancel_order",
        "in_launch_faq": True,
        "question": "How do I cancel my order?",
        "answer": "You can cancel an order within 1 hour of placing it under My Account > Orders > Cancel.",
        "paraphrases": [
            "I want to cancel my purchase",
            "can I still cancel the order I just made",
            "how to stop my order",
            "cancel order please",
            "I ordered by mistake, can you cancel it",
        ],
    },
    {
        "topic": "password_reset",
        "in_launch_faq": True,
        "question": "How do I reset my password?",
        "answer": "Click Forgot password on the sign-in page and follow the link we email you.",
        "paraphrases": [
            "I forgot my password",
            "can't log in to my account",
            "how to change my password",
            "reset pasword",
            "locked out of my account, what do I do",
        ],
    },
    {
        "topic": "international_shipping",
        "in_launch_faq": True,
        "question": "Do you ship internationally?",
        "answer": "We ship to all EU countries, the UK, Switzerland and Norway; duties may apply outside the EU.",
        "paraphrases": [
            "do you deliver abroad",
            "can you ship to the UK",
            "international delivery available?",
            "do you send orders to other countries",
            "I live in Norway, can I order",
        ],
    },
    {
        "topic": "contact",
        "in_launch_faq": True,
        "question": "How can I contact customer service?",
        "answer": "Our support team is reachable by chat or at support@example-shop.com, Monday to Friday 9 to 18.",
        "paraphrases": [
            "how do I talk to a human",
            "what is your email address",
            "customer support opening hours",
            "I need to speak to someone",
            "phone number for support",
        ],
    },
    {
        "topic": "damaged_item",
        "in_launch_faq": False,
        "question": "What should I do if my item arrived damaged?",
        "answer": "Send us a photo of the damage within 14 days and we will ship a replacement free of charge.",
        "paraphrases": [
            "my product arrived broken",
            "the box was crushed and the item is damaged",
            "received a defective item",
            "what if my order is broken",
            "the glass was shattered when it arrived",
        ],
    },
    {
        "topic": "exchange_size",
        "in_launch_faq": False,
        "question": "Can I exchange an item for a different size?",
        "answer": "Yes, request an exchange under My Account > Orders and we will send the new size once we receive the old one.",
        "paraphrases": [
            "the shoes are too small, can I swap them",
            "I need a bigger size",
            "how do I exchange for another size",
            "wrong size, can I get a different one",
            "swap size",
        ],
    },
    {
        "topic": "gift_cards",
        "in_launch_faq": False,
        "question": "Do you sell gift cards?",
        "answer": "Yes, digital gift cards from 10 to 200 are available on the Gift Cards page and never expire.",
        "paraphrases": [
            "can I buy a voucher for a friend",
            "do gift cards expire",
            "gift certificate",
            "I want to give a present card",
            "where can I get a gift card",
        ],
    },
    {
        "topic": "discount_code",
        "in_launch_faq": False,
        "question": "Why is my discount code not working?",
        "answer": "Discount codes apply to full-price items only, one per order; check the code's expiry date in your email.",
        "paraphrases": [
            "my promo code doesn't work",
            "the coupon is rejected at checkout",
            "voucher code invalid",
            "how do I use a discount code",
            "coupon not applied",
        ],
    },
    {
        "topic": "change_address",
        "in_launch_faq": False,
        "question": "Can I change the delivery address of my order?",
        "answer": "You can change the address until the order ships, under My Account > Orders > Edit address.",
        "paraphrases": [
            "I entered the wrong address",
            "how to update my shipping address",
            "can I send my order to a different address",
            "moved house, need to change delivery address",
            "wrong street on my order",
        ],
    },
    {
        "topic": "invoice",
        "in_launch_faq": False,
        "question": "Where can I find my invoice?",
        "answer": "Invoices are emailed when your order ships and can be downloaded as PDF under My Account > Orders.",
        "paraphrases": [
            "I need a receipt for my purchase",
            "download invoice",
            "can I get a VAT invoice",
            "where is my bill",
            "I lost my receipt",
        ],
    },
]


def launch_faq() -> tuple[list[str], list[str]]:
    """The (question, answer) pairs v1 is trained on: the launch FAQ's own wording."""
    rows = [item for item in FAQ if item["in_launch_faq"]]
    return [item["question"] for item in rows], [item["answer"] for item in rows]


def customer_questions() -> list[tuple[str, str]]:
    """(question as a customer asks it, true answer) for every topic, FAQ wording included."""
    return [(q, item["answer"]) for item in FAQ for q in [item["question"], *item["paraphrases"]]]


def topic_questions() -> dict[str, list[tuple[str, str]]]:
    """Per topic: (question as a customer asks it, true answer), FAQ wording included."""
    return {
        item["topic"]: [(q, item["answer"]) for q in [item["question"], *item["paraphrases"]]] for item in FAQ
    }


def launch_topics() -> list[str]:
    return [item["topic"] for item in FAQ if item["in_launch_faq"]]


def later_topics() -> list[str]:
    """Topics the launch FAQ left out, in the order customers start asking about them."""
    return [item["topic"] for item in FAQ if not item["in_launch_faq"]]
